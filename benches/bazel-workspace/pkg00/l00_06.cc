#include "pkg00/l00_06.h"
#include "pkg00/l00_05.h"
#include <algorithm>
#include <numeric>

namespace l00_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 9) ^ (b + 6); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 6, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l00_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l00_06:" + std::to_string(score({seed, seed * 9, 6}));
}
}  // namespace l00_06
