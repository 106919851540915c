#include "pkg01/l01_03.h"
#include "pkg01/l01_02.h"
#include <algorithm>
#include <numeric>

namespace l01_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 15) ^ (b + 12); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 12, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l01_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l01_03:" + std::to_string(score({seed, seed * 15, 12}));
}
}  // namespace l01_03
