#include "pkg00/l00_03.h"
#include "pkg00/l00_02.h"
#include <algorithm>
#include <numeric>

namespace l00_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 6) ^ (b + 3); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 3, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l00_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l00_03:" + std::to_string(score({seed, seed * 6, 3}));
}
}  // namespace l00_03
