#ifndef PKG00_L00_05_H
#define PKG00_L00_05_H
#include <string>
#include <vector>

namespace l00_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l00_05

#endif
