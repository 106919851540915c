#include "pkg00/l00_05.h"
#include "pkg00/l00_04.h"
#include <algorithm>
#include <numeric>

namespace l00_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 8) ^ (b + 5); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 5, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l00_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l00_05:" + std::to_string(score({seed, seed * 8, 5}));
}
}  // namespace l00_05
