#include "pkg00/l00_07.h"
#include "pkg00/l00_06.h"
#include <algorithm>
#include <numeric>

namespace l00_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 10) ^ (b + 7); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 7, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l00_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l00_07:" + std::to_string(score({seed, seed * 10, 7}));
}
}  // namespace l00_07
